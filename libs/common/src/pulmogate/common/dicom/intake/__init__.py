"""One intake for every way an instance comes in (C-STORE, upload): read and check its
header (``header``), map it to the values PulmoGate indexes (``values``), file it under
its instance path (``pulmogate.common.storage``), write its series and instance rows
(``rows``) and announce a complete series (``announce``)."""

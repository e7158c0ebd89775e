"""Manual uploads: unpack safely, check each file is a CT instance, store, announce."""

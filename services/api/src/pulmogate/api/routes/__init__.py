"""HTTP routes: thin handlers that parse, authorise and call crud."""

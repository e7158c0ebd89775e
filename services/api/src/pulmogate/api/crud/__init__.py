"""Database work behind the routes: queries, inserts, updates and their checks."""

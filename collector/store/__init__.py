"""The store: typed models, the database engine, and migrations to head."""

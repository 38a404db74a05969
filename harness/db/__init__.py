"""The results registry: SQLAlchemy schema, ordered migrations, and the Store API."""
from .store import Store, default_db_url

__all__ = ["Store", "default_db_url"]

"""One module per page; each has ``register(app)`` adding that page's callbacks."""
from importlib import import_module

PAGE_CALLBACKS = ("account", "data", "night", "search", "proposals", "management", "logs")


def register_all(app) -> None:
    for name in PAGE_CALLBACKS:
        import_module(f"callbacks.{name}").register(app)

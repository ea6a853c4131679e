"""One module per page (and one for the navbar); each has ``register(app)`` adding its callbacks."""
from importlib import import_module

PAGE_CALLBACKS = ("account", "data", "night", "search", "proposals", "management", "logs", "navbar")


def register_all(app) -> None:
    for name in PAGE_CALLBACKS:
        import_module(f"callbacks.{name}").register(app)

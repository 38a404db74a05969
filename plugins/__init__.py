"""Built-in ser-bench plugins (registered by module path in harness.plugins.BUILTIN_PLUGINS)."""

"""Built-in ser-bench plugins (registered by module path in ser_bench.plugins.BUILTIN_PLUGINS)."""

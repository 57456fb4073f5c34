"""ml_collections experiment configs: `get_config(arg)`, with a ':smoke' variant."""

"""The knowledge base: its schema and loader (`kb`), bands, uniforms, and the YAML data."""

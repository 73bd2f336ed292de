"""The sheet declarations: one TOML file per user type (data, shipped in the wheel)."""

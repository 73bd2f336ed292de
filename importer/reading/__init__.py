"""Reading: file -> cleaned text rows in chunks; the pre-parse guard; the sources."""

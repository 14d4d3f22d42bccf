"""Timer logic of the Python timer component (see ../README.md)."""

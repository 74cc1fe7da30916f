"""Task types that the tests add as plug-ins, the way a user adds one (docs/extending.md)."""

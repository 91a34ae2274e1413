"""The `.nash` language front end: grammar, AST, semantic checks, errors."""

"""Components used by the tests as a user's own `_target_` would be."""

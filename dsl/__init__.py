"""The tracing front end and the array DSL."""

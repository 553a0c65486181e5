"""The proxy's runtime glue: state machines wired to loop transports."""

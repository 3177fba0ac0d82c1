"""sendq: asynchronous outbound dispatch and retry on arq and Redis."""

"""gRPC front-end processes: they serve clients' HTTP/2 and relay each call to the member."""

"""The embedded stack: everything Goodman Live runs on in AWS, on this machine."""

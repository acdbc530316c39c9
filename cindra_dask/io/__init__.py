"""TIFF input: discovery, lazy page reading and the ingest graph."""

"""``tierstore bench locality``: three sites at a network distance (network
namespaces, a delay wire, an S3 server each)."""

"""S3-S4: the content-addressed artifact store, instance keys and signing, sealing, canaries."""

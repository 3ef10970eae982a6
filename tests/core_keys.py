"""Keys shared by the core tests: distinctive, so a leak is easy to grep for."""

KEY = "vc_TESTKEY_s3cr3t_7f1e9c2a4b"
LOW_KEY = "vc_LOWKEY_s3cr3t_0d8b6a2f11"
DISABLED_KEY = "vc_DISKEY_s3cr3t_55aa10c3e2"
BAD_KEY = "vc_BADKEY_s3cr3t_99ffee1234"

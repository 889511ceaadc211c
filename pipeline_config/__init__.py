"""Deployment settings: profiles rendered into config.pbtxt and gateway configs, the paths of a checkout, CLI help."""

"""An emulated datacenter fabric for volcano-topology: for tests, demos and development."""

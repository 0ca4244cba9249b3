"""Generated `sssn.v1` messages and stubs (`make proto` or the package build writes them)."""

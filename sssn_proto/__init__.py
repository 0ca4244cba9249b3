"""Python modules generated from protos/ (the `sssn.v1` contract); never edited by hand."""

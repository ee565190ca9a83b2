"""Data files installed with gflow (see README.md here for provenance and licences); found through
`gflow.config.find_data`."""

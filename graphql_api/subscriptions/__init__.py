"""The schema's root subscription fields (graphql-transport-ws on /graphql)."""

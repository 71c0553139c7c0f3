"""Stage 2, identity: which identifiers are one customer, as known at a point in time.

- `graph`: the identifier graph as of a date, the over-merge guard and the stable customer ids;
- `events`: events → customers, the input of every later stage;
- `changes`: merges, splits and renames between builds, and the identity tables a build writes;
- `explain`: why records are one customer;
- `reports`: set-aside identifiers, the identity export, attributes per customer.
"""

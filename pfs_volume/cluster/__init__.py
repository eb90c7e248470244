"""The cluster: membership under etcd leases, rendezvous placement, branch write locks,
replication of commits between nodes and repair after a node is lost."""

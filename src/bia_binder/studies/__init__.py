"""Studies launched by accession: ``/v2/bia/<accession>``, ``/v2/idr/...``, ``/v2/biostudies/<accession>``.

    accessions  what a launch link may name (checked before any request)
    snapshot    the archive's metadata, fetched through bia_binder.data, capped, hashed
    notebook    the starter notebook made from a snapshot (nbformat; parameters as literals)
    environment the one prebuilt environment of study sessions (from a lock file in the repository)
    store       generated files, content-addressed by permanent link
    launch      the launch pipeline's study branch
"""

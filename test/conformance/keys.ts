// TEST-ONLY Ed25519 key pairs for the kernel conformance table (test/conformance/table.json).
// They are public on purpose: fixed keys (and fixed times) make the signed bundles, and so the
// table, byte-reproducible (Ed25519 signatures are deterministic). Never trust them anywhere.

/** Signs every bundle of the table; its public half is `trustedKeys[0]`. */
export const MAIN_PRIVATE_KEY = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIMsw6S67ZNe45DrTUqe9aH4HdfAFb2Tw9De2beaFqpkj
-----END PRIVATE KEY-----
`;
export const MAIN_PUBLIC_KEY = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAWfcJjrXL0z+nZH2l4+Uo2tKLsKV0/iH0Z1v1S5kfZ5g=
-----END PUBLIC KEY-----
`;

/** A second signer (`trustedKeys[1]`), for the unknown-key and several-keys rows. */
export const OTHER_PRIVATE_KEY = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIG10L0pzLNqylEkLIBY6uUUjTxQ0FuaPT0EgiTurz2ZK
-----END PRIVATE KEY-----
`;
export const OTHER_PUBLIC_KEY = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAzzPEas3zovWj8AX6qoZKO7b+8ZuJdXFxBZEa+b9WgD4=
-----END PUBLIC KEY-----
`;

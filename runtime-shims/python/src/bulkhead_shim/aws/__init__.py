"""AWS pieces of the Python side, standard library only (port of runtime-shims/node/aws/): the SigV4 signer
(`sigv4`), and the workload token read from Secrets Manager or SSM (`secret_token`). The Lambda extension
for Python runtimes uses them; the proof of identity built on the signer is `client.attest_aws`."""

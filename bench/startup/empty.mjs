// Baseline: Node's own start-up, no contender.
void globalThis.fetch;
process.stdout.write(`${performance.now()} 0\n`);

// The wasm memory of the auth-session package loaded in this process, for the memory and
// leak figures. The Node entry is one bundled file with its own module instance, so the
// memory is caught where it is made: this module wraps WebAssembly.Instance, and must be
// imported before the package is.

let memory;
const Original = WebAssembly.Instance;
WebAssembly.Instance = class extends Original {
  constructor(module, imports) {
    super(module, imports);
    if (this.exports.memory instanceof WebAssembly.Memory) memory = this.exports.memory;
  }
};

/** The linear memory's size in bytes (0 before the package made its instance). */
export function wasmMemoryBytes() {
  return memory ? memory.buffer.byteLength : 0;
}

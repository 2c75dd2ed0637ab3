/** Re-registers wasm kernels that are wrong or missing (filled in by the wasm-kernels work). */
export function patchWasmKernels(): void {}

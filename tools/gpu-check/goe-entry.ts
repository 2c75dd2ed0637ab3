/**
 * The `goe` command as one bundle (pack.sh), so that training and segmentation run on a GPU machine
 * that has no Node.js and no node_modules: `bash run.sh --goe train --backend webgpu …`.
 */
import './bundled-webgpu.js';
import { main } from '../../apps/pipeline/src/cli.js';

// Exit explicitly: a WebGPU device keeps the event loop alive after the work is done.
process.exit(await main(process.argv.slice(2)));

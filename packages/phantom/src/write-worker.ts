/** Worker thread of the phantom writer: runs chunk and pyramid tasks sent by writePhantom. */
import { serveTasks } from './parallel.js';
import { openPhantomArrays, type PhantomArrays, runWriteTask, type WriteTask, type WriteWorkerData } from './write-chunk.js';

let arrays: Promise<PhantomArrays> | undefined;

serveTasks<WriteTask, void, WriteWorkerData>((task, data) => runWriteTask(task, data.config, () => (arrays ??= openPhantomArrays(data.root))));

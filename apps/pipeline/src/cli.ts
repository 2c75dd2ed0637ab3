import { VERSION } from './index.js';
export async function main(argv: string[]): Promise<number> {
  console.log('goe', VERSION, argv);
  return 0;
}

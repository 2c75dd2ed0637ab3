import { TF } from '@goe/tf'; export const VERSION = '0.1.0' + TF;

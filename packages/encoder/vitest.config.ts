import { goeVitestConfig } from '../../vitest.shared.js';

export default goeVitestConfig('@goe/encoder');

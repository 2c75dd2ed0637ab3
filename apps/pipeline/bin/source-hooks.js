// Module resolution hook: resolve workspace packages through their `@goe/source` export condition,
// so the `goe` command runs straight from TypeScript sources without a build step.
export async function resolve(specifier, context, nextResolve) {
  const conditions = context.conditions.includes('@goe/source')
    ? context.conditions
    : ['@goe/source', ...context.conditions];
  return nextResolve(specifier, { ...context, conditions });
}

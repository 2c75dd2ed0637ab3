export const TF = 1;

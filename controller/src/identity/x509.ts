// The one import point for @peculiar/x509 in Mandate: the Reflect shim must be evaluated before
// the library (ES modules evaluate imports in order), so import X.509 classes from here, never
// from '@peculiar/x509' directly. Type-only imports from the package are fine (erased).
import './reflect-shim.ts';

export * from '@peculiar/x509';

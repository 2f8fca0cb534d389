// Each test worker sees the local stack through process.env, as a deployed function would.
import { inject } from 'vitest';

Object.assign(process.env, inject('testEnv'));

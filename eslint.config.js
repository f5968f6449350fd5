// ESLint without type information (fast; no compiler API needed).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '.switchyard/**', 'bench/results/**', '.test-tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setImmediate: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly', fetch: 'readonly', TextDecoder: 'readonly', TextEncoder: 'readonly', Headers: 'readonly', AbortController: 'readonly', structuredClone: 'readonly', performance: 'readonly', NodeJS: 'readonly' } },
    rules: {
      'no-console': 'error',
      // Flags the common "let x = fallback; try { x = … } catch { … }" pattern; not worth the noise.
      'no-useless-assignment': 'off',
      'no-empty': ['error', { allowEmptyCatch: false }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  { files: ['**/bin/**', 'scripts/**', 'bench/**', 'test/**', '**/*.test.ts', '.ci/**'], rules: { 'no-console': 'off' } },
);

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Scope } from '../../db/database.ts';
import { ProblemError } from '../../http/errors.ts';
import { templateFile, type TemplateResponse } from './lifecycle.schema.ts';
import { WorkspaceImport, type ImportOptions } from './workspace-import.ts';

interface Template extends TemplateResponse {
  lines: { kind: string; data: Record<string, unknown> }[];
}

const directory = fileURLToPath(new URL('../../../seeds/templates/', import.meta.url));

/**
 * Workspace templates, `seeds/templates/<name>.json`: export-shaped lines (ids, versions and
 * timestamps may be left out), applied by the import path into the workspace being created.
 * Read once at start: a broken file stops the process, not a workspace creation.
 */
export class Templates {
  private readonly byName: ReadonlyMap<string, Template>;

  constructor(templates: Template[]) {
    this.byName = new Map(templates.map((template) => [template.name, template]));
  }

  static load(from = directory): Templates {
    const files = readdirSync(from).filter((file) => file.endsWith('.json'));
    return new Templates(
      files.sort().map((file) => {
        const parsed = templateFile.safeParse(JSON.parse(readFileSync(path.join(from, file), 'utf8')));
        if (!parsed.success) throw new Error(`seeds/templates/${file} is not a template: ${parsed.error.message}`);
        const { title, description, lines } = parsed.data;
        return {
          name: file.slice(0, -'.json'.length),
          title,
          description,
          structures: lines.filter((line) => line.kind === 'structure').map((line) => String(line.data.name)),
          records: lines.filter((line) => line.kind === 'record').length,
          lines,
        };
      }),
    );
  }

  list(): TemplateResponse[] {
    return [...this.byName.values()].map(({ lines: _lines, ...template }) => template);
  }

  /** The template, or a 400 naming the ones there are. */
  find(name: string): Template {
    const template = this.byName.get(name);
    if (template) return template;
    throw new ProblemError(
      'template_not_found',
      `No template "${name}"; templates: ${[...this.byName.keys()].join(', ')}`,
      {
        errors: [{ pointer: '/template', in: 'body', detail: 'is not a template (GET /v1/templates lists them)' }],
      },
    );
  }

  check(name: string): void {
    this.find(name);
  }

  /** Applies a template in the new workspace's transaction, through the import's checks. */
  async apply(scope: Scope, name: string, options: Omit<ImportOptions, 'identityProviders'>): Promise<void> {
    const template = this.find(name);
    const restore = await WorkspaceImport.into(scope, { ...options, identityProviders: 'import' });
    for (const [index, line] of template.lines.entries()) await restore.add(index + 1, line);
    await restore.finish();
  }
}

/**
 * Which opened or dropped files are classified (`expand_inputs` and `NOT_IMAGES` of
 * `cxr_edge/runtime/pipeline.py`): a file given on its own is always classified, whatever its name, so
 * that it gets its result or its error; inside a folder every file is, except hidden ones (and those in
 * hidden folders) and those whose suffix says they are certainly not images (documents, tables,
 * archives, code), which are counted and reported by suffix. DICOM files often have no suffix (or
 * `.dat`, `.img`, `.bin`) and are never guessed away. Files come in the order `os.walk` gives them:
 * in each folder its files by name, then its subfolders by name.
 *
 * Folders come from a drop (`webkitGetAsEntry`: {@link entriesFromDrop}, {@link walkEntries}) or from a
 * folder picker (`<input webkitdirectory>`, whose files carry `webkitRelativePath`).
 *
 * @module inputs
 */

/** Suffixes that are certainly not images, skipped inside folders (Python's `NOT_IMAGES`). */
export const NOT_IMAGES = Object.freeze(
  new Set([
    ...['.md', '.txt', '.rst', '.csv', '.tsv', '.json', '.jsonl', '.xml', '.html', '.htm'],
    ...['.pdf', '.doc', '.docx', '.xls', '.xlsx', '.odt', '.ods', '.rtf'],
    ...['.zip', '.gz', '.tgz', '.bz2', '.xz', '.7z', '.tar'],
    ...['.py', '.sh', '.log', '.yaml', '.yml', '.toml', '.ini', '.cfg', '.parquet', '.sqlite', '.db'],
    ...['.mp4', '.avi', '.mov', '.mp3', '.wav'],
  ]),
);

/**
 * One input: the file and the path the user opened it under (its name, or its path inside the folder).
 * @typedef {{file: File, path: string}} Input
 */

/**
 * `Path(name).suffix.lower()`: the last dot's part, unless the name starts with it or ends with it.
 * @param {string} name the last path segment
 */
export function suffixOf(name) {
  const dot = name.lastIndexOf('.');
  if (dot <= 0 || dot === name.length - 1) return '';
  return name.slice(dot).toLowerCase();
}

/**
 * Orders paths inside a folder as `os.walk` with sorted names visits them: at each level the files
 * first, by name, then each subfolder's contents.
 * @param {string} a
 * @param {string} b
 */
export function walkOrder(a, b) {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] === pb[i]) continue;
    const fileA = i === pa.length - 1;
    const fileB = i === pb.length - 1;
    if (fileA !== fileB) return fileA ? -1 : 1;
    return pa[i] < pb[i] ? -1 : 1;
  }
  return pa.length - pb.length;
}

/**
 * The files of a folder that are classified, in `os.walk` order: hidden ones left out, certainly-not-images
 * skipped (and returned, to be counted).
 * @param {Input[]} inFolder files found inside a folder (`path` relative, with `/`)
 * @returns {{inputs: Input[], skipped: string[]}} `skipped`: the paths left out (not images)
 */
export function folderInputs(inFolder) {
  const hidden = (path) => path.split('/').some((part) => part.startsWith('.'));
  const kept = [];
  const skipped = [];
  for (const item of [...inFolder].sort((x, y) => walkOrder(x.path, y.path))) {
    if (hidden(item.path)) continue;
    (NOT_IMAGES.has(suffixOf(item.path.split('/').pop())) ? skipped : kept).push(item);
  }
  return { inputs: kept, skipped: skipped.map((s) => s.path) };
}

/**
 * The inputs to classify from what was opened: loose files as they are (whatever their name), then a
 * folder's contents filtered ({@link folderInputs}).
 * @param {Input[]} loose files given on their own
 * @param {Input[]} inFolders files found inside folders (`path` relative, with `/`)
 * @returns {{inputs: Input[], skipped: string[]}}
 */
export function selectInputs(loose, inFolders) {
  const { inputs, skipped } = folderInputs(inFolders);
  return { inputs: [...loose, ...inputs], skipped };
}

/**
 * The summary's note on files skipped in folders: how many, and their kinds (not their names), as the
 * CLI's `_not_images`.
 * @param {string[]} skipped paths
 */
export function skippedNote(skipped) {
  const kinds = [...new Set(skipped.map((p) => suffixOf(p.split('/').pop())))].sort();
  return `${skipped.length} non-image file(s) in folders skipped (${kinds.join(', ')})`;
}

/**
 * The inputs of a folder picker (`<input webkitdirectory>`): every file is inside the folder.
 * @param {ArrayLike<File>} files
 */
export function fromFolderPicker(files) {
  return folderInputs(Array.from(files, (file) => ({ file, path: file.webkitRelativePath || file.name })));
}

/**
 * The file-system entries of a drop. Must be called during the `drop` event: the browser empties
 * `dataTransfer.items` once the handler returns.
 * @param {DataTransfer} dataTransfer
 * @returns {{entries: FileSystemEntry[], files: File[]}} `files`: the drop's files where entries are
 *     unavailable (then there are no folders)
 */
export function entriesFromDrop(dataTransfer) {
  const items = Array.from(dataTransfer?.items ?? []).filter((i) => i.kind === 'file');
  const entries = items.map((i) => i.webkitGetAsEntry?.() ?? null);
  if (entries.length && entries.every(Boolean)) return { entries, files: [] };
  return { entries: [], files: Array.from(dataTransfer?.files ?? []) };
}

/**
 * Walks dropped entries in their order, as the CLI takes its arguments: a file on its own is an input,
 * a folder is read recursively and its files selected ({@link folderInputs}).
 * @param {FileSystemEntry[]} entries
 * @returns {Promise<{inputs: Input[], skipped: string[]}>}
 */
export async function walkEntries(entries) {
  const inputs = [];
  const skipped = [];
  let inFolders = [];
  const fileOf = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));
  const readAll = async (dir) => {
    const reader = dir.createReader();
    const all = [];
    for (;;) {
      // readEntries returns the folder's entries in batches (100 in Chromium) until an empty one.
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) return all;
      all.push(...batch);
    }
  };
  const walk = async (dir, prefix) => {
    for (const entry of await readAll(dir)) {
      const path = `${prefix}/${entry.name}`;
      if (entry.name.startsWith('.')) continue; // hidden files and folders, as the CLI skips them
      if (entry.isDirectory) await walk(entry, path);
      else inFolders.push({ file: await fileOf(entry), path });
    }
  };
  for (const entry of entries) {
    if (entry.isDirectory) {
      inFolders = [];
      await walk(entry, entry.name);
      const selected = folderInputs(inFolders);
      inputs.push(...selected.inputs);
      skipped.push(...selected.skipped);
    } else {
      inputs.push({ file: await fileOf(entry), path: entry.name });
    }
  }
  return { inputs, skipped };
}

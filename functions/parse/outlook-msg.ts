import msgreader, { type FieldsData } from '@kenjiuno/msgreader';
import { detectMimeType } from 'nodemailer/lib/mime-funcs/mime-types.js';
import type { ContainerLimits, UnpackedContainer, UnpackedFile } from './tnef.ts';

// CommonJS compiled from ESM: Node's import gives the exports object, with the class on `default`.
const MsgReader = msgreader.default;

/**
 * Reads an Outlook item (.msg, MS-OXMSG) with msgreader: its subject, sender, plain-text body and
 * attached files. msgreader follows the compound file's sector chains without a cycle check, so a
 * hostile file can loop and grow memory without end: run this only behind
 * {@link readOutlookMsgBounded}, never on the function's own thread.
 */
export function readOutlookMsg(bytes: Buffer, limits: ContainerLimits = {}): UnpackedContainer {
  const maxFiles = limits.maxFiles ?? 256;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const reader = new MsgReader(view);
  const data = reader.getFileData();
  if (data.error) throw new Error(`not an Outlook item: ${data.error}`);
  const warnings: string[] = [];
  const attachments = data.attachments ?? [];
  if (attachments.length > maxFiles)
    warnings.push(`msg_too_many_files: only the first ${maxFiles} are unpacked`);
  const files = attachments.slice(0, maxFiles).flatMap((attachment: FieldsData): UnpackedFile[] => {
    // An attached Outlook item (innerMsgContent) is surfaced as its own .msg file.
    const { fileName, content } = reader.getAttachment(attachment);
    if (!content) return [];
    const filename = fileName || attachment.fileNameShort || attachment.name || null;
    return [
      {
        filename,
        contentType:
          attachment.attachMimeTag ||
          (attachment.innerMsgContent ? 'application/vnd.ms-outlook' : detectMimeType(filename ?? false)),
        contentId: attachment.pidContentId || null,
        content: Buffer.from(content.buffer, content.byteOffset, content.byteLength),
      },
    ];
  });
  const address = data.senderSmtpAddress || data.senderEmail || null;
  return {
    format: 'msg',
    subject: data.subject ?? null,
    from:
      data.senderName || address
        ? { name: data.senderName ?? '', address: address?.includes('@') ? address : null }
        : null,
    text: data.body ?? null,
    files,
    warnings,
  };
}

import type { AnyNode, ChildNode, Element } from 'domhandler';
import { findAll, getAttributeValue, getOuterHTML, removeElement, textContent } from 'domutils';
import { parseDocument } from 'htmlparser2';
import { isAppFooter } from './stripped-text.ts';

const classes = (element: Element) => (getAttributeValue(element, 'class') ?? '').toLowerCase().split(/\s+/);
const hasClass = (element: Element, ...names: string[]) =>
  classes(element).some((name) => names.includes(name));
const idIs = (element: Element, ...ids: string[]) => ids.includes(getAttributeValue(element, 'id') ?? '');

/**
 * Elements that hold the quoted history: Gmail (`gmail_quote`), Apple Mail and Thunderbird
 * (`blockquote type="cite"`), new Outlook (the reference-message container), Yahoo and Proton.
 */
function isQuoteContainer(element: Element): boolean {
  if (hasClass(element, 'gmail_quote', 'gmail_quote_container', 'yahoo_quoted', 'protonmail_quote'))
    return true;
  if (idIs(element, 'mail-editor-reference-message-container')) return true;
  return element.name === 'blockquote' && getAttributeValue(element, 'type')?.toLowerCase() === 'cite';
}

/**
 * Elements after which the history follows: Thunderbird's attribution (`moz-cite-prefix`), Outlook
 * on the web (`appendonsend`, `divRplyFwdMsg`, `stopSpelling`) and Outlook desktop's header block
 * under a solid top border.
 */
function isHistoryHeader(element: Element): boolean {
  if (hasClass(element, 'moz-cite-prefix')) return true;
  if (idIs(element, 'appendonsend', 'divRplyFwdMsg', 'stopSpelling')) return true;
  const style = (getAttributeValue(element, 'style') ?? '').toLowerCase().replace(/\s+/g, '');
  // <div style="border:none;border-top:solid #E1E1E1 1.0pt;…"><p><b>From:</b> …
  return (
    element.name === 'div' &&
    /border-top:solid#(e1e1e1|b5c4df)/.test(style) &&
    /^\s*(from|von|de|van):/i.test(textContent(element))
  );
}

/** The signature blocks of Gmail, Thunderbird, Outlook and Apple Mail. */
function isSignature(element: Element): boolean {
  if (hasClass(element, 'gmail_signature', 'gmail_signature_prefix', 'moz-signature')) return true;
  if (idIs(element, 'Signature', 'ms-outlook-mobile-signature', 'AppleMailSignature')) return true;
  // A block holding nothing but a mail app's footer ("Sent from my iPhone").
  return ['div', 'p'].includes(element.name) && isAppFooter(textContent(element).trim());
}

function containsMarker(element: Element, markers: readonly string[]): boolean {
  const own = element.children
    .filter((child) => child.type === 'text')
    .map((child) => textContent(child))
    .join(' ')
    .toLowerCase();
  return markers.some((marker) => marker.trim() !== '' && own.includes(marker.trim().toLowerCase()));
}

/** Removes `node` and everything after it in document order. */
function cutFrom(node: ChildNode): void {
  let current: AnyNode | null = node;
  while (current?.parent) {
    const siblings: ChildNode[] = current.parent.children;
    for (const later of siblings.slice(siblings.indexOf(current as ChildNode) + 1)) removeElement(later);
    current = current.parent;
  }
  removeElement(node);
}

interface Walk {
  /** Every node in document order. */
  readonly nodes: AnyNode[];
  /** Index in `nodes` of the last node inside each node. */
  readonly lastInside: Map<AnyNode, number>;
  /** Index of the last non-blank text node outside every quote block; -1 without one. */
  readonly lastTypedText: number;
}

// One iterative pass (hostile HTML nests deeper than the call stack allows).
function walk(root: AnyNode): Walk {
  const nodes: AnyNode[] = [];
  const lastInside = new Map<AnyNode, number>();
  let lastTypedText = -1;
  const stack: { node: AnyNode; quoted: boolean; exit: boolean }[] = [
    { node: root, quoted: false, exit: false },
  ];
  while (stack.length > 0) {
    const { node, quoted, exit } = stack.pop()!;
    if (exit) {
      lastInside.set(node, nodes.length - 1);
      continue;
    }
    nodes.push(node);
    if (node.type === 'text' && !quoted && (node as { data: string }).data.trim() !== '')
      lastTypedText = nodes.length - 1;
    stack.push({ node, quoted, exit: true });
    if ('children' in node) {
      const inQuote = quoted || (node.type === 'tag' && isQuoteContainer(node as Element));
      for (let index = node.children.length - 1; index >= 0; index--)
        stack.push({ node: node.children[index]!, quoted: inQuote, exit: false });
    }
  }
  return { nodes, lastInside, lastTypedText };
}

/**
 * `message.strippedHtml`: the HTML without the quoted history (the first quote block of a known
 * client, or the first element holding a reply marker, and all after it) and without signature
 * blocks. A quote followed by more typed text is an inline reply and stays.
 */
export function stripQuotedHtml(html: string, options: { markers?: readonly string[] } = {}): string {
  const markers = options.markers ?? [];
  const document = parseDocument(html);
  const { nodes, lastInside, lastTypedText } = walk(document);
  // A quote followed by typed text is part of an inline reply.
  const cut = nodes.find(
    (node): node is Element =>
      node.type === 'tag' &&
      (isHistoryHeader(node as Element) ||
        (isQuoteContainer(node as Element) && lastTypedText <= lastInside.get(node)!) ||
        containsMarker(node as Element, markers)),
  );
  if (cut) cutFrom(cut);
  for (const signature of findAll(isSignature, document.children)) removeElement(signature);
  return getOuterHTML(document).trim();
}

import * as z from 'zod';

/**
 * The route's reply markers: lines such as "## Please type your reply above this line ##" that the
 * app puts at the top of the mail it sends, so that whatever a client quotes under the reply is cut
 * off at the marker. A route config field (`routes[].replyMarkers`).
 */
export const ReplyMarkersSchema = z.array(z.string().trim().min(3)).max(20).default([]).meta({
  description:
    'Reply markers: text such as "## Please type your reply above this line ##". In strippedText and strippedHtml, the first line holding one (quoted or not, any case) and all after it are cut.',
});

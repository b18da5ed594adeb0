// The texts of the classroom's catch-up controls, added to the pages' shared dictionary
// (Chinese first).

import { STRINGS } from './strings.js';

const CATCH_UP = {
  zh: {
    'catchUp.rewind': '回看',
    'catchUp.play': '从这里看',
    'catchUp.live': '回到直播',
    'catchUp.at': '第 {time}（{ago} 前）',
    'catchUp.nothing': '还没有可以回看的内容',
    'catchUp.behind': '落后直播 {time}',
    'catchUp.speed': '追赶速度',
    'catchUp.missed': '错过的 {n} 分钟',
    'catchUp.watchMissed': '观看',
    'catchUp.dismiss': '不用了',
    'catchUp.delayed': '延迟观看 — 网络受限',
  },
  en: {
    'catchUp.rewind': 'Rewind',
    'catchUp.play': 'Watch from here',
    'catchUp.live': 'Back to live',
    'catchUp.at': 'at {time} ({ago} ago)',
    'catchUp.nothing': 'Nothing to rewind to yet',
    'catchUp.behind': '{time} behind live',
    'catchUp.speed': 'Catch-up speed',
    'catchUp.missed': 'The {n} minute(s) you missed',
    'catchUp.watchMissed': 'Watch',
    'catchUp.dismiss': 'No thanks',
    'catchUp.delayed': 'Delayed view — network restricted',
  },
};

for (const lang of Object.keys(CATCH_UP)) Object.assign(STRINGS[lang], CATCH_UP[lang]);
